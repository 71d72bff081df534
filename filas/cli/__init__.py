"""filas/cli"""
