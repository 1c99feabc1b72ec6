"""``elprop serve``: a local web page over elprop's models and run folders (Flask + Jinja2, no CDN)."""
