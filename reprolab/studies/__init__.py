"""Studies run by hand beside the pipeline (ablations); no stage imports them."""
