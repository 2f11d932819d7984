{#-
  Row reconciliation from raw to marts; returns one row per check that does not hold.
  1. Valid rows in the ingestion log = rows in raw, per source.
  2. Quarantined rows in the ingestion log = per-row quarantine entries, per source.
  3. Staging has one row per raw row (the station lookup neither drops nor repeats a row).
  4. fct_observations has one row per distinct (station, metric, event time) of the
     non-null staging readings (deduplication and cross-source precedence remove exactly
     the repeated and the shared keys).
-#}
{{ config(store_failures=true) }}

with

{% for src in var('source_precedence') %}
    logged_{{ src }} as (
        select
            coalesce(sum(rows_valid), 0) as rows_valid,
            coalesce(sum(rows_quarantined), 0) as rows_quarantined
        from {{ pinned_source('audit', 'ingestion_log') }}
        where source = '{{ src }}' and status = 'committed'
    ),

    checks_{{ src }} as (
        select
            '{{ src }}: valid rows logged = raw rows' as check_name,
            (select logged.rows_valid from logged_{{ src }} as logged) as expected,
            (select count(*) from {{ pinned_source('raw', src) }}) as actual
        union all
        select
            '{{ src }}: quarantined rows logged = quarantine rows' as check_name,
            (select logged.rows_quarantined from logged_{{ src }} as logged) as expected,
            (
                select count(*) from {{ pinned_source('quarantine', src) }}
                where _row_index is not null
            ) as actual
        union all
        select
            '{{ src }}: staging rows = raw rows' as check_name,
            (select count(*) from {{ pinned_source('raw', src) }}) as expected,
            (select count(*) from {{ ref('stg_' ~ src ~ '__observations') }}) as actual
    ),
{% endfor %}

observation_keys as (
    select distinct
        station_id,
        metric,
        event_time_utc
    from {{ ref('int_observations_unpivoted') }}
),

checks as (
    {%- for src in var('source_precedence') %}
        select * from checks_{{ src }}
        union all
    {%- endfor %}
    select
        'fct_observations rows = distinct (station, metric, event time) of staging readings' as check_name,
        (select count(*) from observation_keys) as expected,
        (select count(*) from {{ ref('fct_observations') }}) as actual
)

select * from checks
where expected <> actual
