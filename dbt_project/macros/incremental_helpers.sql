{#-
  A predicate: `column` (a timestamp) falls on one of `days` (strings 'YYYY-MM-DD ...', as
  an incremental model's run_query returns them); false for no day. Written as ranges, so
  Trino prunes the partitions of a table partitioned by day(column).
-#}
{% macro in_days(column, days) -%}
    {%- for day in days %}
        (
            {{ column }} >= timestamp '{{ day }}'
            and {{ column }} < timestamp '{{ day }}' + interval '1' day
        ){% if not loop.last %} or{% endif %}
    {%- else %}
        false
    {%- endfor %}
{%- endmacro %}


{#-
  An incremental model's watermark, as a scalar subquery: the newest `column` in the model's
  own table, minus var incremental_lookback_minutes (so a batch that committed after an
  earlier run, though ingested before it, is read again; MERGE makes that harmless).
-#}
{% macro ingested_watermark(column) -%}
    (
        select
            coalesce(max(existing.{{ column }}), timestamp '1970-01-01 00:00:00')
            - interval '{{ var("incremental_lookback_minutes") }}' minute
        from {{ this }} as existing
    )
{%- endmacro %}
