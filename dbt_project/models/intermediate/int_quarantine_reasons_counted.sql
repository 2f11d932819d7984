{#-
  Quarantined rows of every source, counted per batch and reason kind: the field and rule,
  without the offending value (", got ..." / " (got ...)" is cut). A row with several
  reasons counts once under each.
-#}
with quarantined as (
    {%- for src in var('source_precedence') %}
        select
            q._batch_id,
            r.reason
        from {{ pinned_source('quarantine', src) }} as q
        cross join unnest(q.reasons) as r (reason)
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
)

select
    _batch_id,
    substr(regexp_replace(reason, '(, got | \(got ).*$', ''), 1, 160) as reason_kind,
    count(*) as n_rows
from quarantined
group by 1, 2
