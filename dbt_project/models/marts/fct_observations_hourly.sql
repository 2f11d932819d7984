{#-
  Hourly statistics per station and metric: the feed for dashboards and Druid.
  Incremental: a run recomputes only the hours whose observations changed, each from all of
  that hour's rows (late rows are counted, never added twice), and merges them. An hour
  changed when fct_observations merged one of its rows from a newer batch: that row carries
  the winning delivery's _ingested_at, above this table's watermark (its newest
  _last_ingested_at, minus the lookback that fct_observations also uses). The touched days
  are looked up first, so the recomputation reads only their partitions, and its cost
  follows the new batches, not the history. tests/integration/test_dbt.py proves a run
  after every batch equals one full refresh.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    incremental_predicates=merge_window('hour_utc'),
    unique_key=['station_id', 'metric', 'hour_utc'],
    on_schema_change='append_new_columns',
    properties={'partitioning': "ARRAY['day(hour_utc)']", 'format_version': '2'}
) }}

{%- set touched_days = [] -%}
{%- set watermark = "timestamp '1970-01-01 00:00:00'" -%}
{%- if is_incremental() and execute -%}
    {#- A table built before the watermark column existed: every hour is recomputed once. -#}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- if '_last_ingested_at' in columns -%}
        {%- set watermark -%}
            (
                select
                    coalesce(max(existing._last_ingested_at), timestamp '1970-01-01 00:00:00')
                    - interval '{{ var("incremental_lookback_minutes") }}' minute
                from {{ this }} as existing
            )
        {%- endset -%}
    {%- endif -%}
    {%- set days_query -%}
        select distinct cast(cast(event_time_utc as date) as varchar)
        from {{ ref('fct_observations') }}
        where _ingested_at > {{ watermark }}
    {%- endset -%}
    {#- `lakehouse marts update` passes the days of every row it reads as new (var
        touched_days): a superset of this table's touched days, found without a scan -#}
    {%- set touched_days = var('touched_days', none) -%}
    {%- if touched_days is none -%}
        {%- set touched_days = run_query(days_query).columns[0].values() | list -%}
    {%- endif -%}
{%- endif %}

with observations as (
    select
        *,
        date_trunc('hour', event_time_utc) as hour_utc
    from {{ ref('fct_observations') }}
    {%- if is_incremental() %}
        where
            {%- for day in touched_days %}
                (
                    event_time_utc >= timestamp '{{ day }}'
                    and event_time_utc < timestamp '{{ day }}' + interval '1' day
                ){% if not loop.last %} or{% endif %}
            {%- else %}
                false
            {%- endfor %}
    {%- endif %}
)

{%- if is_incremental() %},

touched as (
    select distinct
        station_id,
        metric,
        hour_utc
    from observations
    where _ingested_at > {{ watermark }}
)
{%- endif %}

select
    o.station_id,
    o.metric,
    o.unit,
    o.hour_utc,
    d.state_code,
    d.state_name,
    d.municipality_code,
    d.municipality_name,
    o.is_known_station,
    avg(o.value) as value_avg,
    min(o.value) as value_min,
    max(o.value) as value_max,
    count(*) as n_observations,
    max(o._ingested_at) as _last_ingested_at
from observations as o
{%- if is_incremental() %}
    inner join touched as t
        on o.station_id = t.station_id and o.metric = t.metric and o.hour_utc = t.hour_utc
{%- endif %}
left join {{ ref('dim_stations') }} as d on o.station_id = d.station_id
group by 1, 2, 3, 4, 5, 6, 7, 8, 9
