"""The generators table shows each generator's capacity and its source-address pool, as the
generator registered them."""
from tests.coordinator.support import coordinator_process, generator_processes
from tests.web.conftest import Stack
from tests.web.support import expect


def test_the_generators_table_shows_capacity_and_the_pool(tmp_path, open_page):
    pool = {"pool-gen": ("env", "STRESSGRID_SOURCE_ADDRESSES=127.0.0.2-127.0.0.4"), "plain-gen": ()}
    with coordinator_process(tmp_path) as coordinator, \
            generator_processes(coordinator, tmp_path, list(pool), prefix=pool.get) as started:
        state = coordinator.api.wait_generators(2)
        page = open_page(Stack(coordinator, started, None))
        by_id = {g["id"]: g for g in state["generators"]}
        assert by_id["pool-gen"]["source_addresses"] == 3 and by_id["plain-gen"]["source_addresses"] == 0
        for generator_id, sources in (("pool-gen", "3"), ("plain-gen", "system")):
            cells = page.locator(f'#generator-table tr[data-generator="{generator_id}"] td')
            expect(cells.nth(2)).to_have_text(f"0 / {by_id[generator_id]['capacity']:,}")
            expect(cells.nth(3)).to_have_text(sources)
