"""filas/platform"""
