{#-
  Rows of `relation` deduplicated on `key_columns`: the latest delivery wins (ingestion time,
  then the API's cycle, batch number and id). Identical rows of one batch are tie-broken by `value_columns`,
  so the row kept never depends on file order.
-#}
{% macro latest_delivery(relation, key_columns, value_columns) -%}
    select *
    from (
        select
            *,
            row_number() over (
                partition by {{ key_columns | join(', ') }}
                order by
                    _ingested_at desc, _cycle desc, _batch_number desc, _batch_id desc
                    {%- for column in value_columns %}, {{ column }} asc{% endfor %}
            ) as delivery_rank
        from {{ relation }}
    )
    where delivery_rank = 1
{%- endmacro %}
