{#-
  Per state, UTC day and metric: the mean of the stations' daily means, how many stations
  exceeded the WHO 2021 guideline (var aq_thresholds, dbt_project.yml), and completeness:
  the station-hours with data over the station-hours expected (24 per registered station of
  the state whose network measures the metric). Unknown stations have no state: they are
  counted in mart_data_quality, not here.
-#}
{%- set thresholds = var('aq_thresholds') -%}

with station_days as (
    select
        d.state_code,
        d.state_name,
        o.metric,
        o.unit,
        cast(o.event_time_utc as date) as day_utc,
        o.station_id,
        avg(o.value) as station_mean,
        count(distinct date_trunc('hour', o.event_time_utc)) as hours_with_data
    from {{ ref('fct_observations') }} as o
    inner join {{ ref('dim_stations') }} as d on o.station_id = d.station_id
    where d.is_known_station
    group by 1, 2, 3, 4, 5, 6
),

network_metrics as (
    {%- for network, columns in network_metrics().items() %}
        {%- for metric, _, _ in columns %}
            select
                '{{ network | replace("_", "-") }}' as network,
                '{{ metric }}' as metric
            {%- if not loop.last %} union all{% endif %}
        {%- endfor %}
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
),

expected as (
    select
        r.state_code,
        m.metric,
        count(distinct r.station_id) as stations_expected
    from {{ ref('station_registry') }} as r
    inner join network_metrics as m on r.network = m.network
    group by 1, 2
),

thresholds as (
    {%- for metric, value in thresholds.items() %}
        select
            '{{ metric }}' as metric,
            cast({{ value }} as double) as threshold
        {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
)

select
    s.state_code,
    s.state_name,
    s.day_utc,
    s.metric,
    s.unit,
    avg(s.station_mean) as mean_value,
    max(s.station_mean) as max_station_mean,
    count(*) as stations_reporting,
    max(e.stations_expected) as stations_expected,
    max(t.threshold) as threshold,
    case when max(t.threshold) is not null then count_if(s.station_mean > t.threshold) end as stations_exceeding,
    sum(s.hours_with_data) as station_hours_with_data,
    round(100.0 * sum(s.hours_with_data) / (24 * max(e.stations_expected)), 2) as completeness_pct
from station_days as s
left join expected as e on s.state_code = e.state_code and s.metric = e.metric
left join thresholds as t on s.metric = t.metric
group by 1, 2, 3, 4, 5
