"""On-device predictive-maintenance models: feature windows, detectors, alert state.

Empty in this release: the model side is planned (see the issue tracker). The package exists
so the layout is stable and imports never break when it lands.
"""
