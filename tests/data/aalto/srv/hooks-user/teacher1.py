spawner.mem_limit = "8G"
environ["TEACHER1_HOOK"] = username
