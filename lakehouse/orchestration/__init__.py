"""Airflow: how the native stack runs it (runtime), and what the DAG files read (dags)."""
