{#-
  Row reconciliation from raw to marts; returns one row per check that does not hold.
  1. Valid rows in the ingestion log = rows in raw, per source.
  2. Quarantined rows in the ingestion log = per-row quarantine entries, per source.
  3. Staging has one row per distinct natural key of raw (deduplication removes exactly the
     repeated keys).
  4. fct_observations has one row per distinct (station, metric, event time) of the
     non-null staging readings (cross-source precedence removes exactly the shared keys).
-#}
{%- set sources = var('source_precedence') -%}

with checks as (
    {%- for src in sources %}
    select
        '{{ src }}: valid rows logged = raw rows' as check_name,
        (select coalesce(sum(rows_valid), 0) from {{ source('audit', 'ingestion_log') }}
            where source = '{{ src }}' and status = 'committed') as expected,
        (select count(*) from {{ source('raw', src) }}) as actual
    union all
    select
        '{{ src }}: quarantined rows logged = quarantine rows',
        (select coalesce(sum(rows_quarantined), 0) from {{ source('audit', 'ingestion_log') }}
            where source = '{{ src }}' and status = 'committed'),
        (select count(*) from {{ source('quarantine', src) }} where _row_index is not null)
    union all
    select
        '{{ src }}: staging rows = distinct natural keys in raw',
        (select count(*) from (
            select distinct station_code_or_device, event_time from (
                {%- if src == 'network_a' %}
                select station_code as station_code_or_device, {{ iso_offset_to_utc('"timestamp"') }} as event_time
                {%- else %}
                select device_id as station_code_or_device, {{ epoch_ms_to_utc('ts') }} as event_time
                {%- endif %}
                from {{ source('raw', src) }}
            )
        )),
        (select count(*) from {{ ref('stg_' ~ src ~ '__observations') }})
    union all
    {%- endfor %}
    select
        'fct_observations rows = distinct (station, metric, event time) of staging readings',
        (select count(*) from (select distinct station_id, metric, event_time_utc from {{ ref('int_observations_unpivoted') }})),
        (select count(*) from {{ ref('fct_observations') }})
)

select * from checks where expected <> actual
