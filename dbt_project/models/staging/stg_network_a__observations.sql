{#-
  Network A (federal stations), one row per station code and event time.
  Renames to the common names, converts the local time with its UTC offset to UTC, looks up
  the canonical station, and keeps the latest delivery of each natural key.
-#}
with source as (
    select * from {{ source('raw', 'network_a') }}
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
        coalesce(_cycle, 1) as _cycle
    from source
),

deduplicated as (
    {{ latest_delivery(
        'renamed',
        key_columns=['source_station_code', 'event_time_utc'],
        value_columns=['pm25_ugm3', 'pm10_ugm3', 'o3_ppb', 'no2_ppb', 'temperature_c', 'relative_humidity_pct']
    ) }}
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
    d._ingested_at
from deduplicated as d
left join registry as r on d.source_station_code = r.source_code
