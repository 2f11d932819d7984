{#-
  Network A (federal stations), one row per delivered row of raw.
  Renames to the common names, converts the local time with its UTC offset to UTC, and looks
  up the canonical station. Nothing is deduplicated here: fct_observations keeps the latest
  delivery of each key, so a filter on _ingested_at or _event_time reaches the raw scan
  through this view (issue 13: a build reads what new batches touched, not all history).
-#}
with source as (
    select * from {{ pinned_source('raw', 'network_a') }}
),

renamed as (
    select
        'network_a' as source,
        station_code as source_station_code,
        {{ iso_offset_to_utc('"timestamp"') }} as event_time_utc,
        pm25 as pm25_ugm3,
        pm10 as pm10_ugm3,
        o3 as o3_ppb,
        no2 as no2_ppb,
        temperature as temperature_c,
        relative_humidity as relative_humidity_pct,
        _batch_id,
        _group_number,
        _batch_number,
        _ingested_at,
        coalesce(_cycle, 1) as _cycle,
        _event_time
    from source
),

registry as (
    select * from {{ ref('station_registry') }}
    where network = 'network-a'
)

select
    d.source,
    d.source_station_code,
    coalesce(r.station_id, 'unknown:network_a:' || d.source_station_code) as station_id,
    r.station_id is not null as is_known_station,
    d.event_time_utc,
    d.pm25_ugm3,
    d.pm10_ugm3,
    d.o3_ppb,
    d.no2_ppb,
    d.temperature_c,
    d.relative_humidity_pct,
    d._batch_id,
    d._group_number,
    d._batch_number,
    d._ingested_at,
    d._cycle,
    d._event_time
from renamed as d
left join registry as r on d.source_station_code = r.source_code
