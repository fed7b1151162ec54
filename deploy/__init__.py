"""Operations assets of rastir and their generator (python -m deploy.generate)."""
