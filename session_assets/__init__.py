"""session_assets: a Dagster code location that scans product-analytics sessions."""

import warnings

# The code location uses beta and preview APIs on purpose (an observable source asset,
# partitioned asset checks, sensor owners); Dagster warns of them on every load of the
# definitions, in every process, which says nothing new to whoever starts `dev`.
warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")
