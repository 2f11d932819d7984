"""Pure steps of batch ingestion: fetch, parse, validate. The Spark writes live in spark_jobs/."""
