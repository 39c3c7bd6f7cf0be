# Image definitions, exec'd by the hub every 60 s (Aalto's syntax).
from datetime import date

VERSION = "5.0.4"
REGISTRY = "aaltoscienceit"

IMAGE_DEFAULT = f"{REGISTRY}/notebook-server:{VERSION}"
IMAGE_COURSE_DEFAULT = IMAGE_DEFAULT
IMAGE_DEFAULT_R = REGISTRY + "/notebook-server-r-ubuntu:" + VERSION
IMAGE_DEFAULT_JULIA = "aaltoscienceit/notebook-server-julia:4.1.0"
IMAGE_DEFAULT_CUDA = "aaltoscienceit/notebook-server-cuda:1.8.8"
IMAGE_TESTING = "registry.cs.aalto.fi/jupyter/notebook-server:5.0.4"

IMAGES_BYDATE = {
    "standard": [
        (date(2022, 8, 1), "aaltoscienceit/notebook-server:4.0.0"),
        (date(2023, 1, 9), "aaltoscienceit/notebook-server:5.0.4"),
    ],
    "r-ubuntu": [
        (date(2022, 8, 1), "aaltoscienceit/notebook-server-r-ubuntu:4.0.0"),
    ],
}
IMAGES_BYDATE["standard"].append((date(2024, 1, 8), "aaltoscienceit/notebook-server:6.1.2"))

IMAGES_OLD = [
    (None, "aaltoscienceit/notebook-server:5.0.26"),
    ("Python 2023 (JupyterLab)", "aaltoscienceit/notebook-server:4.0.0"),
]
