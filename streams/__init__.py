"""Faust stream processing: the Avro codec (``codec``) and raw decoding with dead letters
(``raw_decoder``)."""
