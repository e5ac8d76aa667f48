"""A directory put first on PYTHONPATH by ``ember run``: its ``sitecustomize`` installs the
``ray`` alias (ember._ray_alias) in every Python process of the program."""
