"""File-system edges: input expansion, image reading/writing, atomic writes, manifests."""
