"""engines/rotation"""
