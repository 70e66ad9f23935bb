"""Names of the environment variables faceid reads, in one light module the CLI can import at
start-up (it must not pull in numpy, Pillow or the model libraries)."""

MAX_PIXELS_ENV = "FACEID_MAX_PIXELS"
FACE_BACKEND_ENV = "FACEID_FACE_BACKEND"
INSIGHTFACE_ROOT_ENV = "FACEID_INSIGHTFACE_ROOT"
DLIB_MODELS_ENV = "FACEID_DLIB_MODELS"
DEBUG_ENV = "FACEID_DEBUG"
