"""Model zoo: architecture registry, pretrained entries, download/cache, and the one loader."""
