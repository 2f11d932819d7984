{#-
  Network B (university IoT sensors), one row per delivered row of raw.
  Renames to the common names and converts to the common units: epoch milliseconds to UTC,
  ozone ppm to ppb, Fahrenheit to Celsius, humidity as a fraction to %. Looks up the
  canonical station. Every delivered row stays: deduplication happens in fct_observations,
  so a filter on _ingested_at or _event_time reaches the raw scan through this view.
-#}
with source as (
    select * from {{ pinned_source('raw', 'network_b') }}
),

renamed as (
    select
        'network_b' as source,
        device_id as source_station_code,
        {{ epoch_ms_to_utc('ts') }} as event_time_utc,
        pm2_5 as pm25_ugm3,
        {{ ppm_to_ppb('ozone') }} as o3_ppb,
        {{ fahrenheit_to_celsius('temp_f') }} as temperature_c,
        {{ fraction_to_percent('humidity') }} as relative_humidity_pct,
        battery_v,
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
    where network = 'network-b'
)

select
    d.source,
    d.source_station_code,
    coalesce(r.station_id, 'unknown:network_b:' || d.source_station_code) as station_id,
    r.station_id is not null as is_known_station,
    d.event_time_utc,
    d.pm25_ugm3,
    d.o3_ppb,
    d.temperature_c,
    d.relative_humidity_pct,
    d.battery_v,
    d._batch_id,
    d._group_number,
    d._batch_number,
    d._ingested_at,
    d._cycle,
    d._event_time
from renamed as d
left join registry as r on d.source_station_code = r.source_code
