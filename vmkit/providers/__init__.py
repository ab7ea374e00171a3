"""The built-in backends, one package each (``aws``, ...).

Each is registered under the entry-point group ``vmkit.providers`` exactly as
a third party's would be, and imported only when first connected, together
with its cloud SDK. A package holds ``provider.py`` (the operations),
``translate.py`` (pure spec/response conversions) and ``errors.py`` (SDK
errors mapped to vmkit's).
"""
