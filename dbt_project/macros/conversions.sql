{#-
  Unit and clock conversions used by the staging models. Each one is dispatched, so an engine
  other than Trino (DuckDB in the benchmarks, say) can bring its own SQL.
-#}

{% macro fahrenheit_to_celsius(column) -%}
    {{ return(adapter.dispatch('fahrenheit_to_celsius')(column)) }}
{%- endmacro %}
{% macro default__fahrenheit_to_celsius(column) -%}
    round(({{ column }} - 32.0) * 5.0 / 9.0, 2)
{%- endmacro %}

{% macro ppm_to_ppb(column) -%}
    {{ return(adapter.dispatch('ppm_to_ppb')(column)) }}
{%- endmacro %}
{% macro default__ppm_to_ppb(column) -%}
    round({{ column }} * 1000.0, 3)
{%- endmacro %}

{% macro fraction_to_percent(column) -%}
    {{ return(adapter.dispatch('fraction_to_percent')(column)) }}
{%- endmacro %}
{% macro default__fraction_to_percent(column) -%}
    round({{ column }} * 100.0, 2)
{%- endmacro %}

{#- '2026-01-05T08:00:00-06:00' -> timestamp(6) 2026-01-05 14:00:00 (UTC, no zone) -#}
{% macro iso_offset_to_utc(column) -%}
    {{ return(adapter.dispatch('iso_offset_to_utc')(column)) }}
{%- endmacro %}
{% macro trino__iso_offset_to_utc(column) -%}
    cast(from_iso8601_timestamp({{ column }}) at time zone 'UTC' as timestamp(6))
{%- endmacro %}

{#- epoch milliseconds -> timestamp(6) UTC (no zone), keeping the milliseconds -#}
{% macro epoch_ms_to_utc(column) -%}
    {{ return(adapter.dispatch('epoch_ms_to_utc')(column)) }}
{%- endmacro %}
{% macro trino__epoch_ms_to_utc(column) -%}
    cast(from_unixtime_nanos({{ column }} * 1000000) at time zone 'UTC' as timestamp(6))
{%- endmacro %}
