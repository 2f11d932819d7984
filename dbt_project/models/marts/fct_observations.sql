{#-
  One row per station, metric and UTC event time, across both networks: the latest non-null
  delivery of each key (a null reading is "no reading", never a retraction). When both
  networks report a key, the source listed first in var source_precedence wins.

  Incremental, and its cost follows the new batches rather than the history:
  1. the UTC days holding rows ingested since this table's newest row (minus a lookback, so
     a batch that committed late is not missed) are looked up first; the filter on
     _ingested_at reaches raw's scan, where each batch's files carry one _ingested_at.
     `lakehouse marts update` has looked them up already, and passes them (var
     touched_days);
  2. only those days' partitions of raw are read (raw is partitioned by day(_event_time)),
     and every key in them is ranked over all its deliveries, which share its day;
  3. the winners ingested since the watermark are merged. A winner older than that is
     already here, since it won before.
  So a run after every batch gives the same table as one full refresh
  (tests/integration/test_dbt.py proves it).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    incremental_predicates=merge_window('event_time_utc'),
    unique_key=['station_id', 'metric', 'event_time_utc'],
    on_schema_change='fail',
    properties={'partitioning': "ARRAY['day(event_time_utc)']", 'format_version': '2'}
) }}

{%- set touched_days = [] -%}
{%- set watermark -%}
    (
        select
            coalesce(max(existing._ingested_at), timestamp '1970-01-01 00:00:00')
            - interval '{{ var("incremental_lookback_minutes") }}' minute
        from {{ this }} as existing
    )
{%- endset -%}
{#- The staging views, read directly: a query run while compiling can't use the ephemeral
    model (dbt inlines it only into the model's own SQL). -#}
{%- for source in network_metrics() %}
-- depends_on: {{ ref('stg_' ~ source ~ '__observations') }}
{%- endfor %}
{%- if is_incremental() and execute -%}
    {%- set days_query -%}
        {%- for source in network_metrics() %}
            select distinct cast(cast(_event_time at time zone 'UTC' as date) as varchar) as day_utc
            from {{ ref('stg_' ~ source ~ '__observations') }}
            where _ingested_at > {{ watermark }}
            {% if not loop.last %}union{% endif %}
        {%- endfor %}
    {%- endset -%}
    {#- `lakehouse marts update` passes the days it already looked up (var touched_days) -#}
    {%- set touched_days = var('touched_days', none) -%}
    {%- if touched_days is none -%}
        {%- set touched_days = run_query(days_query).columns[0].values() | list -%}
    {%- endif -%}
{%- endif %}

with observations as (
    select * from {{ ref('int_observations_unpivoted') }}
    {%- if is_incremental() %}
        where
            {%- for day in touched_days %}
                (
                    _event_time >= timestamp '{{ day }} 00:00:00 UTC'
                    and _event_time < timestamp '{{ day }} 00:00:00 UTC' + interval '1' day
                ){% if not loop.last %} or{% endif %}
            {%- else %}
                false
            {%- endfor %}
    {%- endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by station_id, metric, event_time_utc
            order by
                {{ source_rank('source') }},
                _ingested_at desc, _cycle desc, _batch_number desc, _batch_id desc, value asc
        ) as key_rank
    from observations
)

select
    station_id,
    metric,
    event_time_utc,
    value,
    unit,
    is_known_station,
    source,
    source_station_code,
    _batch_id,
    _batch_number,
    _ingested_at
from ranked
where
    key_rank = 1
    {%- if is_incremental() %}
        and _ingested_at > {{ watermark }}
    {%- endif %}
