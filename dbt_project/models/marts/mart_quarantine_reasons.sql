{#-
  Why rows were quarantined: per ingestion attempt (a row of audit.ingestion_log) and reason
  kind, the rows carrying that reason. The same counts as mart_data_quality's
  quarantine_reasons, one row each, so a dashboard can group and filter them.
-#}
with audit as (
    -- a person's decision on a held batch is an audit row of its own: not another attempt
    select * from {{ pinned_source('audit', 'ingestion_log') }}
    where decided_by is null
),

reason_counts as (
    select * from {{ ref('int_quarantine_reasons_counted') }}
)

select
    a.source,
    a.group_number,
    a.batch_number,
    a.batch_id,
    r.reason_kind,
    r.n_rows as rows_with_reason,
    a.rows_quarantined,
    a.finished_at
from reason_counts as r
inner join audit as a on r._batch_id = a.batch_id
