{#-
  Both networks as one long table: one row per source, station, metric and event time.
  A missing (null) reading is not an observation, so it has no row here; completeness in
  fct_daily_state_indicators counts it as a gap. Every delivery is here (nothing is
  deduplicated yet), so a later delivery with a null reading never hides an earlier value.
-#}
{%- for source, columns in network_metrics().items() %}
    {%- set metric_names = [] %}
    {%- set metric_values = [] %}
    {%- set metric_units = [] %}
    {%- for metric, column, unit in columns %}
        {%- do metric_names.append("'" ~ metric ~ "'") %}
        {%- do metric_values.append("cast(s." ~ column ~ " as double)") %}
        {%- do metric_units.append("'" ~ unit ~ "'") %}
    {%- endfor %}
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
        s._ingested_at,
        s._cycle,
        s._event_time
    from {{ ref('stg_' ~ source ~ '__observations') }} as s
    cross join
        unnest(
            array[{{ metric_names | join(', ') }}],
            array[{{ metric_values | join(', ') }}],
            array[{{ metric_units | join(', ') }}]
        ) as m (metric, value, unit)
    where m.value is not null
    {% if not loop.last %}union all{% endif %}
{%- endfor %}
