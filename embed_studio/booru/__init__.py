"""Booru clients (e621, Danbooru), downloader, md5 tag lookup and tag-list filtering."""
