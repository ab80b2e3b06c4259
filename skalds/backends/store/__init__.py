"""Task stores: durable task records with compare-and-set writes."""
