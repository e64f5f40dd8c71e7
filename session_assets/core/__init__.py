"""Pure rules: UTC days, watermarks and their materialization records, rollup coverage, the tick plan, the page writer."""
