"""``gesturekit workflow``: the whole chain (convert -> pack -> train -> evaluate -> prune -> retrain -> qat ->
export -> cards -> report) as one resumable command driven by a workflow file."""
