"""Other libraries' models as diffbits models (``schedule`` + ``eps_hat``)."""
