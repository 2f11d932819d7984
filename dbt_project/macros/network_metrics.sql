{#-
  The metrics each network measures: (metric, staging column, unit). One definition for the
  unpivot (int_observations_unpivoted) and the completeness denominators
  (fct_daily_state_indicators).
-#}
{% macro network_metrics() -%}
    {{ return({
        'network_a': [('pm25', 'pm25_ugm3', 'ug/m3'), ('pm10', 'pm10_ugm3', 'ug/m3'),
                      ('o3', 'o3_ppb', 'ppb'), ('no2', 'no2_ppb', 'ppb'),
                      ('temperature', 'temperature_c', 'C'),
                      ('relative_humidity', 'relative_humidity_pct', '%')],
        'network_b': [('pm25', 'pm25_ugm3', 'ug/m3'), ('o3', 'o3_ppb', 'ppb'),
                      ('temperature', 'temperature_c', 'C'),
                      ('relative_humidity', 'relative_humidity_pct', '%')],
    }) }}
{%- endmacro %}
