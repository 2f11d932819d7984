{#-
  Row reconciliation from raw to marts; returns one row per check that does not hold.
  In the scheduler's build, checks 1-3 cover the batches since var tests_since, and check 4
  the days from var merge_from (below); a person's `dbt build` checks everything.
  1. Valid rows in the ingestion log = rows in raw, per source: of committed batches, and of
     held batches a person released (their rows reach raw when released; a held batch's, or
     a rejected one's, never do).
  2. Quarantined rows in the ingestion log = per-row quarantine entries, per source: of
     committed and held batches (a held batch's quarantined rows are published at once).
  3. Staging has one row per raw row (the station lookup neither drops nor repeats a row).
  4. fct_observations has one row per distinct (station, metric, event time) of the
     non-null staging readings (deduplication and cross-source precedence remove exactly
     the repeated and the shared keys); in the scheduler's build, from var merge_from on.
-#}
{{ config(store_failures=true) }}

with

{#- A pinned build (`lakehouse marts update`) reads the audit log first, then raw and
    quarantine: a batch mid-commit may be in raw but not yet logged (ingestion logs last),
    so checks 1 and 2 count the logged batches' rows. Unpinned, every row counts, and rows of
    a batch that never reached the log fail them. -#}
{%- set pinned = var('source_snapshots', {}) | length > 0 %}
{#- In the scheduler's build (var tests_since), checks 1-3 cover the batches that began after
    the incremental marts' watermark minus the lookback, and their rows: the batches this
    build reads as new, and older ones the lookback re-reads. Earlier batches were checked by
    the builds that read them. A batch's rows are ingested after it begins, so their
    `_ingested_at` is after it too (which lets Iceberg skip older files). -#}
{%- set since = var('tests_since', none) if pinned else none %}
{%- set batches_since %}{% if since %} and started_at >= timestamp '{{ since }}'{% endif %}{% endset %}
{%- set rows_since %}{% if since %} and _ingested_at >= timestamp '{{ since }}'{% endif %}{% endset %}
{% for src in var('source_precedence') %}
    {%- set of_logged_batches -%}
        {%- if pinned %}{{ rows_since }} and _batch_id in (
            select batch_id from {{ pinned_source('audit', 'ingestion_log') }}
            where source = '{{ src }}' and status in ('committed', 'held', 'released'){{ batches_since }}
        ){%- endif -%}
    {%- endset %}
    logged_{{ src }} as (
        select
            coalesce(sum(rows_valid) filter (where status in ('committed', 'released')), 0) as rows_valid,
            coalesce(sum(rows_quarantined) filter (where status in ('committed', 'held')), 0) as rows_quarantined
        from {{ pinned_source('audit', 'ingestion_log') }}
        where source = '{{ src }}' and status in ('committed', 'held', 'released'){{ batches_since }}
    ),

    checks_{{ src }} as (
        select
            '{{ src }}: valid rows logged = raw rows' as check_name,
            (select logged.rows_valid from logged_{{ src }} as logged) as expected,
            (select count(*) from {{ pinned_source('raw', src) }} where true {{ of_logged_batches }}) as actual
        union all
        select
            '{{ src }}: quarantined rows logged = quarantine rows' as check_name,
            (select logged.rows_quarantined from logged_{{ src }} as logged) as expected,
            (
                select count(*) from {{ pinned_source('quarantine', src) }}
                where _row_index is not null {{ of_logged_batches }}
            ) as actual
        union all
        select
            '{{ src }}: staging rows = raw rows' as check_name,
            (select count(*) from {{ pinned_source('raw', src) }} where true {{ rows_since }}) as expected,
            (select count(*) from {{ ref('stg_' ~ src ~ '__observations') }} where true {{ rows_since }}) as actual
    ),
{% endfor %}

{#- In the scheduler's build (var merge_from), check 4 covers the days the build could change:
    older days were checked by the build that last changed them. -#}
{%- set since = var('merge_from', none) %}
observation_keys as (
    select distinct
        station_id,
        metric,
        event_time_utc
    from {{ ref('int_observations_unpivoted') }}
    {%- if since %}
        where event_time_utc >= timestamp '{{ since }}'
    {%- endif %}
),

checks as (
    {%- for src in var('source_precedence') %}
        select * from checks_{{ src }}
        union all
    {%- endfor %}
    select
        'fct_observations rows = distinct (station, metric, event time) of staging readings' as check_name,
        (select count(*) from observation_keys) as expected,
        (
            select count(*) from {{ ref('fct_observations') }}
            {%- if since %}
                where event_time_utc >= timestamp '{{ since }}'
            {%- endif %}
        ) as actual
)

select * from checks
where expected <> actual
