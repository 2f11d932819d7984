{#-
  Both networks as one long table: one row per source, station, metric and event time.
  A missing (null) reading is not an observation, so it has no row here; completeness in
  fct_daily_state_indicators counts it as a gap.
-#}
{%- set metrics = network_metrics() -%}

{%- for source, columns in metrics.items() %}
select
    s.station_id,
    s.is_known_station,
    s.source,
    s.source_station_code,
    m.metric,
    m.value,
    m.unit,
    s.event_time_utc,
    s._batch_id,
    s._batch_number,
    s._ingested_at
from {{ ref('stg_' ~ source ~ '__observations') }} as s
cross join unnest(
    array[{% for metric, _, _ in columns %}'{{ metric }}'{{ ', ' if not loop.last }}{% endfor %}],
    array[{% for _, column, _ in columns %}cast(s.{{ column }} as double){{ ', ' if not loop.last }}{% endfor %}],
    array[{% for _, _, unit in columns %}'{{ unit }}'{{ ', ' if not loop.last }}{% endfor %}]
) as m (metric, value, unit)
where m.value is not null
{% if not loop.last %}union all{% endif %}
{%- endfor %}
