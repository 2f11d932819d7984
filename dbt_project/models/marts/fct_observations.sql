{#-
  One row per station, metric and UTC event time, across both networks.
  Incremental: each run merges the rows whose winning delivery was ingested since the newest
  row already here (minus a lookback, so a batch that committed late is not missed). The
  winner of a key is chosen over all rows first, then filtered, so a run after every batch
  gives the same table as one full refresh (tests/integration/test_dbt.py proves it).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['station_id', 'metric', 'event_time_utc'],
    on_schema_change='fail',
    properties={'partitioning': "ARRAY['day(event_time_utc)']", 'format_version': '2'}
) }}

with ranked as (
    select
        *,
        row_number() over (
            partition by station_id, metric, event_time_utc
            order by {{ source_rank('source') }}, _ingested_at desc, _batch_id desc
        ) as key_rank
    from {{ ref('int_observations_unpivoted') }}
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
    {% if is_incremental() %}
        and _ingested_at > (
            select
                coalesce(max(existing._ingested_at), timestamp '1970-01-01 00:00:00')
                - interval '{{ var("incremental_lookback_minutes") }}' minute
            from {{ this }} as existing
        )
    {% endif %}
