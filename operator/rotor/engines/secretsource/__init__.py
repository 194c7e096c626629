"""engines/secretsource"""
