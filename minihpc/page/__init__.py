"""The class's live page (minihpc class page): server.py serves it, collect.py
gathers its data read-only, picture.py draws its timeline; index.html,
page.js and page.css are the page itself."""
