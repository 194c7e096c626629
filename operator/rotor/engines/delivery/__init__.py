"""engines/delivery"""
