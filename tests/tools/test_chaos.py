"""The cheapest chaos cases through the suite's own functions (`make chaos` runs them all), so its code
cannot rot: hostile landing files next to a good one, and a ledger writer SIGKILLed at each file operation."""

import functools

from mlops_assets.benchmarks import chaos, chaos_kills, chaos_landing


def test_cheap_chaos_cases_lose_nothing_and_the_table_adds_up():
    results = chaos.run_cases({
        "landing": functools.partial(chaos_landing.hostile_landing, only=chaos_landing.FAST),
        "kill_score": chaos_kills.kill_score,
    }, echo=lambda *_: None)
    count = chaos.totals(results)
    assert (count["lost"], count["inconsistent"], count["wedged"]) == (0, 0, 0), chaos.table(results)
    # the good day, the bad re-delivery, each of the three hostile files, the ledger kills
    assert count["tried"] == 6 and count["rejected"] == 4 and count["recovered"] == 2, chaos.table(results)
    assert chaos.table(results).splitlines()[-1] == "  ".join(f"{k} {v}" for k, v in count.items())
