{#-
  A source table as one build reads it. `lakehouse marts update` (the scheduler's build)
  passes var source_snapshots: the current Iceberg snapshot id of every source table, read
  once before the build. Each read of a source then sees that snapshot, so a batch that
  commits while the build runs is in none of its models and tests, rather than in some of
  them: the reconciliation test compares raw with marts built from the same raw. Without
  the var (a person's `dbt build`), sources are read as they are.
-#}
{% macro pinned_source(source_name, table_name) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- set snapshot = var('source_snapshots', {}).get(source_name ~ '.' ~ table_name) -%}
    {{ relation }}{% if snapshot %} for version as of {{ snapshot }}{% endif %}
{%- endmacro %}
