# Aalto hook: run for every server (exec'd inside the spawn hook).
spawner.environment["AALTO_HOOK_ALL"] = "1"
