import time, cProfile, pstats
from hypothesis import given, settings, HealthCheck, Phase
from tests.test_properties import histories, run_history
import tests.test_properties as tp
from session_assets import sensors

orig = sensors.execute_tick
def timed(*a, **k):
    t = time.monotonic(); r = orig(*a, **k)
    print(f"tick {a[3]} runs={len(r['runs'])} {time.monotonic()-t:.2f}s", flush=True)
    return r
tp.execute_tick = timed

@settings(max_examples=2, derandomize=True, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
@given(history=histories())
def test_prof(history, chdb_url, postgres_resource, tmp_path):
    t = time.monotonic()
    pr = cProfile.Profile(); pr.enable()
    try:
        run_history(history, chdb_url, postgres_resource, tmp_path)
    except AssertionError as e:
        print("assert", str(e)[:200])
    pr.disable()
    print(f"example {time.monotonic()-t:.2f}s", flush=True)
    pstats.Stats(pr).sort_stats("cumulative").print_stats(40)
