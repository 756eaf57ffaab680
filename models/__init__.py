"""On-device predictive-maintenance models: feature windows, detectors, thresholds, alert state.

The pipeline, one module per step: ``features`` cuts sliding windows of good samples into
feature vectors; ``operating_state`` tags each window off/idle/running; ``detectors`` learn
normal per state and score windows; ``thresholds`` turn a false-alarm budget into a threshold;
``alerts`` debounces scores into raised/cleared alerts; ``explain`` says which signals, how
far from normal and what the likely cause is. ``model.MachineModel`` ties one machine's
detectors together and ``store`` writes them as pickle-free model files. Offline: ``csvdata``
reads labelled CSVs, ``evaluate`` replays them causally, ``cli`` is ``edge-agent model``.
Nothing here does I/O beyond its own model files (and the CSVs the CLI is pointed at);
scoring needs numpy only.
"""
