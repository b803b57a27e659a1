"""One tiny Restormer per option of the zoo's Restormer configs, shared by the forward-equality tests."""

RESTORMER_VARIANTS = {
    "with-bias-norm": {},
    "bias-free-norm": {"LayerNorm_type": "BiasFree"},
    "conv-bias": {"bias": True},
    "heads": {"heads": [2, 2, 4, 4]},
    "dual-pixel": {"inp_channels": 6, "dual_pixel_task": True},
    "grey": {"inp_channels": 1, "out_channels": 1},
}
