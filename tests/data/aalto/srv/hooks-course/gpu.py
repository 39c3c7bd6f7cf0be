spawner.node_selector["cs-aalto/gpu-a100"] = "true"
spawner.log.info("gpu hook for %s", course_slug)
