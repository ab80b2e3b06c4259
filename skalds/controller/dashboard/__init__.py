"""The dashboard's files (``static/``): HTML, vanilla ES modules and CSS, served by
:mod:`skalds.controller.routes.dashboard`. No build step: what is here is what the browser runs."""
