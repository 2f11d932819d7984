{#-
  Every station: the registry's, and any unknown code that sent data (is_known_station =
  false, no geo keys), so unknown stations are visible rather than dropped.
-#}
with registry as (
    select
        station_id,
        max(state_code) as state_code,
        max(state_name) as state_name,
        max(municipality_code) as municipality_code,
        max(municipality_name) as municipality_name,
        max(case when network = 'network-a' then source_code end) as network_a_station_code,
        max(case when network = 'network-b' then source_code end) as network_b_device_id
    from {{ ref('station_registry') }}
    group by station_id
),

unknown as (
    select
        station_id,
        source,
        source_station_code
    from {{ ref('stg_network_a__observations') }}
    where not is_known_station
    union distinct
    select
        station_id,
        source,
        source_station_code
    from {{ ref('stg_network_b__observations') }}
    where not is_known_station
)

select
    station_id,
    true as is_known_station,
    state_code,
    state_name,
    municipality_code,
    municipality_name,
    network_a_station_code,
    network_b_device_id
from registry
union all
select distinct
    station_id,
    false as is_known_station,
    cast(null as varchar) as state_code,
    cast(null as varchar) as state_name,
    cast(null as varchar) as municipality_code,
    cast(null as varchar) as municipality_name,
    case when source = 'network_a' then source_station_code end as network_a_station_code,
    case when source = 'network_b' then source_station_code end as network_b_device_id
from unknown
