"""Operations around the service: send a sweep to a Ray cluster (submit.py), open the MLflow UI (ui.py)."""
