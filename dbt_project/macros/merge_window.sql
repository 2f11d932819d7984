{#-
  incremental_predicates for a merge into a table partitioned by day(`column`): with var
  merge_from (the earliest day the new batches touch, computed by `lakehouse marts update`),
  MERGE reads only the target's partitions from that day on, instead of the whole table.
  Safe because every row the model merges is on or after that day, so no older target row
  could match it. Without the var (a person's `dbt build`), no predicate.
-#}
{% macro merge_window(column) -%}
    {%- set since = var('merge_from', none) -%}
    {{ return(["DBT_INTERNAL_DEST." ~ column ~ " >= timestamp '" ~ since ~ "'"] if since else none) }}
{%- endmacro %}
