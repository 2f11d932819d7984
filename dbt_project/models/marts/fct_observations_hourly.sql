{#- Hourly statistics per station and metric: the feed for dashboards and Druid. -#}
select
    o.station_id,
    o.metric,
    o.unit,
    date_trunc('hour', o.event_time_utc) as hour_utc,
    d.state_code,
    d.state_name,
    d.municipality_code,
    d.municipality_name,
    o.is_known_station,
    avg(o.value) as value_avg,
    min(o.value) as value_min,
    max(o.value) as value_max,
    count(*) as n_observations
from {{ ref('fct_observations') }} as o
left join {{ ref('dim_stations') }} as d on o.station_id = d.station_id
group by 1, 2, 3, 4, 5, 6, 7, 8, 9
