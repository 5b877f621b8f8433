"""WebUI preload hook: Embed Studio's command-line flags."""


def preload(parser):
    parser.add_argument(
        "--embed-studio-models-dir",
        type=str,
        default=None,
        help="Embed Studio: folder for downloaded tagger models (default: models/embed-studio in the WebUI)",
    )
    parser.add_argument(
        "--embed-studio-no-api",
        action="store_true",
        help="Embed Studio: do not add the /embed-studio/v1/ API routes",
    )
